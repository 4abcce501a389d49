"""Rasa input channels of the product (custom connectors) and what they share."""
