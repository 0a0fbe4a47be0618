"""Measuring quality: thick-slice simulation (:mod:`.degrade`), metrics (:mod:`.metrics`), the
protocol that ties them to the methods (:mod:`.protocol`), and pictures (:mod:`.figures`)."""
