//! Reddit's listing JSON and the topic documents we store from it (docs/api.md section 6).

use serde::{Deserialize, Serialize};

/// One stored topic: the fields the next pipeline stage reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Topic {
    pub title: String,
    pub external_url: String,
    pub reddit_url: String,
    pub reddit_id: String,
    pub score: i64,
    /// Whole seconds since the epoch; Reddit sends a float.
    pub created_utc: i64,
    pub num_comments: i64,
    /// Empty when the author deleted their account.
    pub author: String,
    pub subreddit: String,
    pub fetched_at: String,
    /// At most [`SELFTEXT_LIMIT`] characters.
    pub selftext: String,
}

/// How much of a self post's text is kept, in characters (not bytes).
pub const SELFTEXT_LIMIT: usize = 500;

/// `{"kind": "Listing", "data": {...}}`
#[derive(Debug, Deserialize)]
pub(crate) struct Listing {
    pub kind: String,
    pub data: ListingData,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListingData {
    pub after: Option<String>,
    pub children: Vec<Thing>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Thing {
    pub kind: String,
    pub data: Post,
}

/// The post fields we use. Missing optional fields default rather than failing the listing.
#[derive(Debug, Deserialize)]
pub(crate) struct Post {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub url: String,
    pub permalink: String,
    #[serde(default)]
    pub score: i64,
    #[serde(default)]
    pub num_comments: i64,
    #[serde(default)]
    pub created_utc: f64,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub selftext: String,
    #[serde(default)]
    pub stickied: bool,
    #[serde(default)]
    pub subreddit: String,
}

impl Post {
    pub(crate) fn into_topic(self, fetched_at: &str) -> Topic {
        let author = match self.author.as_deref() {
            None | Some("[deleted]") => String::new(),
            Some(name) => name.to_owned(),
        };
        Topic {
            title: self.title,
            external_url: self.url,
            reddit_url: format!("https://www.reddit.com{}", self.permalink),
            reddit_id: self.id,
            score: self.score,
            created_utc: self.created_utc.floor() as i64,
            num_comments: self.num_comments,
            author,
            subreddit: self.subreddit,
            fetched_at: fetched_at.to_owned(),
            selftext: self.selftext.chars().take(SELFTEXT_LIMIT).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(author: Option<&str>, selftext: &str) -> Post {
        Post {
            id: "abc123".into(),
            title: "A <title> & more".into(),
            url: "https://example.com/a".into(),
            permalink: "/r/technology/comments/abc123/a_title/".into(),
            score: 42,
            num_comments: 7,
            created_utc: 1_754_920_341.9,
            author: author.map(str::to_owned),
            selftext: selftext.into(),
            stickied: false,
            subreddit: "technology".into(),
        }
    }

    #[test]
    fn a_post_maps_to_the_stored_topic_fields() {
        let topic = post(Some("someone"), "body").into_topic("20250811_135221");
        assert_eq!(
            topic.reddit_url,
            "https://www.reddit.com/r/technology/comments/abc123/a_title/"
        );
        assert_eq!(topic.external_url, "https://example.com/a");
        assert_eq!(topic.created_utc, 1_754_920_341);
        assert_eq!(topic.author, "someone");
        assert_eq!(topic.fetched_at, "20250811_135221");
        assert_eq!(topic.title, "A <title> & more");
    }

    #[test]
    fn deleted_authors_become_empty() {
        assert_eq!(post(Some("[deleted]"), "").into_topic("x").author, "");
        assert_eq!(post(None, "").into_topic("x").author, "");
    }

    #[test]
    fn selftext_is_cut_at_500_characters_not_bytes() {
        let long: String = "é".repeat(600);
        let topic = post(None, &long).into_topic("x");
        assert_eq!(topic.selftext.chars().count(), 500);
    }
}
