"""The ports on Google Cloud's clients, which reach the emulators and local stand-ins alike."""
