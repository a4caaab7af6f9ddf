"""Tiled planning below M_R: cascades of operators run stripe by stripe (``stowage.ir.tiling``)."""
