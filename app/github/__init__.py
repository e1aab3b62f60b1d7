from app.github.client import GitHubApp, GitHubClient, retry_delay

__all__ = ["GitHubApp", "GitHubClient", "retry_delay"]
