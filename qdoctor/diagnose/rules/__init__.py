"""One module per rule, named after its code. Each registers itself with qdoctor.diagnose.registry.rule."""
