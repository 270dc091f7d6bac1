"""One module per lifecycle stage; each module's assets share one group name."""
