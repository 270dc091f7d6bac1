"""The platform's own code, shared by every component and the service: hashing, the content store,
provenance, the environment snapshot, the evidence rule and the records it reads, the gate,
the registry's model versions, events, model cards and the bundle manifest. Dagster-free except
`provenance` and `dagster_records`, which read and write the Dagster instance.
"""
