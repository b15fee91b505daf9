"""The domain: runs, money, keys and the model catalog. Never imports FastAPI."""
