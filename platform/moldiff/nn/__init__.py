"""Backbones (equivariant graph networks) and the graphs they run on."""
