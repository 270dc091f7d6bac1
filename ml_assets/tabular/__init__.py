"""What a ModelLineage runs, without Dagster: data and split, expectations, model, ONNX scorer."""
