"""steadyseg.datasets"""
