"""The local target: the emulators, the API and the pipelines as processes on this machine."""
