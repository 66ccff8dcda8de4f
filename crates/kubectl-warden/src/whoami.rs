//! Who the kubeconfig's user is, as the API server authenticates them: a SelfSubjectReview
//! (`authentication.k8s.io/v1`, GA since Kubernetes 1.28; SOC Warden supports 1.33 and later).
//! The console shows it on every page, `kubectl warden whoami` prints it with the agents it
//! approves for. It is the name the admission webhook stamps on an approval, whatever the
//! kubeconfig calls the user.

use anyhow::{Result, anyhow};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Client;
use kube::api::{Api, PostParams};
use socwarden_core::admission::identity::{CREDENTIAL_ID_KEY, CredentialId};

/// The authenticated user.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Me {
    pub user: String,
    pub groups: Vec<String>,
    /// The token the kubeconfig holds, when it is a ServiceAccount token the API server names.
    pub credential: Option<CredentialId>,
}

/// Asks the API server who the kubeconfig's user is.
pub async fn whoami(client: &Client) -> Result<Me> {
    let review = match Api::<SelfSubjectReview>::all(client.clone())
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
    {
        Ok(r) => r,
        Err(kube::Error::Api(e)) => return Err(anyhow!(refusal(e.code, &e.message))),
        Err(e) => return Err(anyhow!("asking the API server who you are (SelfSubjectReview): {e}")),
    };
    me(review).ok_or_else(|| anyhow!("the API server answered the SelfSubjectReview without a user name"))
}

/// The user a SelfSubjectReview's answer names (`None`: it names none).
fn me(review: SelfSubjectReview) -> Option<Me> {
    let info = review.status?.user_info?;
    let user = info.username.filter(|u| !u.is_empty())?;
    let credential = info.extra.as_ref().and_then(|x| match x.get(CREDENTIAL_ID_KEY)?.as_slice() {
        [one] => CredentialId::parse(one),
        _ => None,
    });
    Some(Me { user, groups: info.groups.unwrap_or_default(), credential })
}

/// Why the API server could not say who the user is, in words that say what to do.
pub fn refusal(code: u16, message: &str) -> String {
    match code {
        401 => format!(
            "the API server does not accept your kubeconfig's credentials ({code}: {message}): log in again, or check the current context"
        ),
        403 => format!(
            "your user may not ask the API server who it is ({code}: {message}): creating selfsubjectreviews.authentication.k8s.io is refused; the default ClusterRole system:basic-user grants it to every authenticated user"
        ),
        404 | 405 => format!(
            "this API server has no SelfSubjectReview (authentication.k8s.io/v1, Kubernetes 1.28+) ({code}: {message}); SOC Warden supports Kubernetes 1.33 and later"
        ),
        _ => format!("the API server could not say who you are (SelfSubjectReview, {code}: {message})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{SelfSubjectReviewStatus, UserInfo};
    use std::collections::BTreeMap;

    fn review(user: Option<&str>, extra: Option<Vec<&str>>) -> SelfSubjectReview {
        SelfSubjectReview {
            status: Some(SelfSubjectReviewStatus {
                user_info: Some(UserInfo {
                    username: user.map(String::from),
                    groups: Some(vec!["soc-leads".into(), "system:authenticated".into()]),
                    extra: extra.map(|v| {
                        BTreeMap::from([(CREDENTIAL_ID_KEY.to_string(), v.into_iter().map(String::from).collect())])
                    }),
                    uid: None,
                }),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_answer_names_the_user_its_groups_and_its_token() {
        let m = me(review(Some("lead-a"), None)).expect("a user");
        assert_eq!((m.user.as_str(), m.groups.len(), m.credential), ("lead-a", 2, None));
        let id = "JTI=0f8fad5b-d9cb-469f-a165-70867728950e";
        let sa = me(review(Some("system:serviceaccount:soc:ci"), Some(vec![id]))).unwrap();
        assert_eq!(sa.credential.map(|c| c.to_string()).as_deref(), Some(id));
        assert_eq!(me(review(Some("x"), Some(vec![id, id]))).unwrap().credential, None, "two values name none");
        assert_eq!(me(review(None, None)), None, "no user name");
        assert_eq!(me(review(Some(""), None)), None, "an empty user name");
        assert_eq!(me(SelfSubjectReview::default()), None, "no status");
    }

    #[test]
    fn each_refusal_says_what_is_wrong() {
        for (code, says) in [
            (401, "does not accept your kubeconfig's credentials"),
            (403, "system:basic-user"),
            (404, "SOC Warden supports Kubernetes 1.33 and later"),
            (405, "has no SelfSubjectReview"),
            (500, "could not say who you are"),
        ] {
            let m = refusal(code, "the server's words");
            assert!(m.contains(says) && m.contains("the server's words"), "{code}: {m}");
        }
    }
}
