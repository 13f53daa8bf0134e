"""Experiments built on the trainer: ``ktae compare`` (arms x seeds, figure and tables) and ``ktae plot``."""
