"""The segment interest model (PyTorch): config, network, losses and cost accounting."""

from model.config import ModelConfig
from model.flops import FlopCount, count_flops
from model.network import SegmentInterestModel

__all__ = ["FlopCount", "ModelConfig", "SegmentInterestModel", "count_flops"]
