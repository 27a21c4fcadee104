"""Chat behaviour both frontends share: texts, cards, error replies, limits and the link-to-media flow."""
