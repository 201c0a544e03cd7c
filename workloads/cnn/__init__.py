"""CNN layer graphs for microcontroller runs (MobileNetV2, MCUNet-style, ResNet-18, DS-CNN)."""

from workloads.cnn.graph import Graph, GraphBuilder, Layer, Tensor
from workloads.cnn.networks import NETWORKS, build_network

__all__ = ["Graph", "GraphBuilder", "Layer", "Tensor", "NETWORKS", "build_network"]
