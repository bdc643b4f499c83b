"""Fault trials: the bridge under kills, power cuts, full disks, broken destinations and storage stalls."""
