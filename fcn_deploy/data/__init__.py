"""Datasets: the VOC2012 layout reader, the synthetic generator and the torch datasets built on them.

Import the submodules directly (``fcn_deploy.data.voc``, ``.transforms``, ``.progress``...): this package file
stays empty so that importing one of them, e.g. the progress helpers, does not load Pillow and the rest.
"""
