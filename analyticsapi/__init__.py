"""Analytics delivery: send-analytics; batches to Mixpanel and GA4 from ``analytics_q``."""
