"""fcn-deploy: train, export, quantise, build and run fully convolutional segmentation networks."""

__version__ = "0.1.0"
