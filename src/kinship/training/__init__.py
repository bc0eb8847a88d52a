"""Training, calibration and evaluation of the kinship model (`kinship train`, `kinship eval`).

`network` builds the served ONNX network from the identity model with onnx and numpy
only; `trainer` needs PyTorch (the optional `train` extra) and is imported only when
a command trains.
"""
