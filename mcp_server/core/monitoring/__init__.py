"""What runs report: metric series and their buckets, live points, the event feed, alerts and failure
classes.
"""
