"""Media for runs: the MP4 writer, the probe that reads it back, audio and images.

Nothing here touches the database or the blob store; engines and the worker call in.
"""
