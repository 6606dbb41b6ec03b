"""Serving on Triton Inference Server: a model repository writer, the segmenter as a Triton model, a PyTriton
server and a KServe v2 client. Heavy packages (pytriton, tritonclient, protobuf) are imported inside functions."""
