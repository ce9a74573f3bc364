"""The fiftyone-csl engine: plain functions over numpy, torch and FiftyOne
collections. No operator or App code lives here."""
