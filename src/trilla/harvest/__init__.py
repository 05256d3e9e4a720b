"""Building datasets from raw material: clips cut from a folder of songs (clips.py), and labelled
pictures crawled from a catalogue site (crawl.py, on Scrapy)."""
