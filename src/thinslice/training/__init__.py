"""Self-supervised training: data and crops (:mod:`.data`), the objective (:mod:`.objective`,
:mod:`.losses`), validation (:mod:`.validation`), the loop (:mod:`.loop`) and its settings
(:mod:`.config`)."""
