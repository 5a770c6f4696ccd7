"""Scoring: frames into face crops, five unit levels and each mouse's alert state."""
