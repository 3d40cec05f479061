"""fastgsl: fused surface-aware segmentation losses with exact distance transforms on the fly."""
__version__ = "0.1.0"
