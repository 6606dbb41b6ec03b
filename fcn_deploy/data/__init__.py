"""Datasets: the VOC2012 layout reader, the synthetic generator and the torch datasets built on them.

Import the submodules directly (``fcn_deploy.data.voc``, ``.transforms``, ``.synth``...): this package file
stays empty so that importing one of them does not load Pillow, torch and the rest.
"""
