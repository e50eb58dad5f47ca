"""Helpers of bench/real_weights.py: packaged pretrained weights, nets, data, training, plan."""
