"""Who is calling and how much they may: accounts, sessions and their tokens, one-time codes, rate limits, and the
routes that sign people in and out."""
