"""The tasks FALIP serves, one module each: REC, region classification, and their metrics."""
