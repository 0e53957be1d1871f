"""The load side of maildrill: campaign, routing, SMTP client, Locust user, analysis."""
