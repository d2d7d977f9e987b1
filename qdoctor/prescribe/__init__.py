"""Verified fixes: each finding's transform applied to a copy of the user's model and measured; the quantization
builders (eager, FX, dynamic) the fixes and `qdoctor compare` share."""
