"""A semantic cache in front of the fleet (category-aware), and IC-Cache (docs/operations.md)."""
