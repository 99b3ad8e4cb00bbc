"""Applications built on the noisylabel toolkit (importable after a plain ``pip install``)."""
