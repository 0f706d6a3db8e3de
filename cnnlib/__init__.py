"""cnnlib: the layers of a convolutional neural network as readable, fast Numba kernels."""
