"""The networks (:mod:`.nets`), their configuration (:mod:`.config`), the checkpoint format
(:mod:`.checkpoint`) and inference (:mod:`.inference`: three views fused, :func:`load_model`)."""
