"""One widget per module; each reads a frame of the model on the app's tick, never per event."""
