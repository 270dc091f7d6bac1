"""From the registry to the endpoint: the `serving_bundle` and
`bento` assets, the promotion job and sensor, the model cards, and the Bento build.
"""
