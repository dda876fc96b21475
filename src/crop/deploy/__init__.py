"""Deployment: ONNX export of crop model files (:mod:`crop.deploy.export`) and the cost of
personalizing and running each method (:mod:`crop.deploy.resources`, the paper's Tables 7-8).

Nothing here imports ``onnx`` or ``onnxruntime`` until it is used; both come with
``pip install 'crop[onnx]'``.
"""
