"""Read-only looks at torch objects (what kind of module, how far along a flow) and the guard of torch's global
state. The lowest layer that imports torch; everything that runs a model builds on it."""
