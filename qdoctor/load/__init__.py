"""Load a target: run the user's script (or import module:attr, or open a saved model) and pick the subject, its
float baseline and example inputs into a LoadedTarget of live objects. Never explains what went wrong."""
