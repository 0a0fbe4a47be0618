"""The jobs a user runs: one upsample (:mod:`.upsample`), a batch (:mod:`.batch`, cases listed
by :mod:`.cases`) and the demo (:mod:`.demo`)."""
