"""Business services used by the Rasa actions. Pure functions over a SQLAlchemy Session."""
