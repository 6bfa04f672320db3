"""Hyperparameter sweeps declared in the config files, run as Ray Tune trials.

``lra-wavelet sweep --sweep=configs/<task>.py:<name>`` runs sweep ``<name>`` of the config
file's ``get_sweeps()`` (``spec``: the declaration and how a trial's config is built;
``tuner``: the Ray Tune run and the trial table; ``cluster``: Ray connection and resources).
"""
