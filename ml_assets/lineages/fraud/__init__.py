"""The fraud detector: P(fraud) of a card transaction (classification)."""
