//! Which StatefulSet a pod belongs to and at which ordinal.

use super::view::PodView;

/// The label the StatefulSet controller sets (Kubernetes 1.28+) to the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// A pod's place in its StatefulSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordinal<'a> {
    pub index: i64,
    /// From the StatefulSet ownerReference, else from the pod name; `None` when neither tells.
    pub statefulset: Option<&'a str>,
}

/// Derives the ordinal: the pod-index label when present, else the `<statefulset>-<n>` name,
/// checked against the StatefulSet ownerReference when there is one. The error says why not.
pub fn derive_ordinal<'p>(pod: &'p PodView<'_>) -> Result<Ordinal<'p>, String> {
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .iter()
        .flatten()
        .find(|owner| owner.kind == "StatefulSet" && owner.api_version.starts_with("apps/"));
    let owner = owner.map(|o| &*o.name);
    let name = meta.name.as_deref().filter(|n| !n.is_empty());

    if let Some(label) = meta.labels.as_ref().and_then(|l| l.get(POD_INDEX_LABEL)) {
        let index = parse_index(label).ok_or_else(|| {
            format!("label {POD_INDEX_LABEL}={label:?} is not a non-negative integer")
        })?;
        let statefulset = owner.or_else(|| name.and_then(|n| split_name(n)).map(|(sts, _)| sts));
        return Ok(Ordinal { index, statefulset });
    }

    let Some(name) = name else {
        return Err(
            "the pod has no name yet (only generateName), so it is not a StatefulSet pod".into(),
        );
    };
    match (split_name(name), owner) {
        (Some((prefix, index)), Some(owner)) if prefix == owner => Ok(Ordinal {
            index,
            statefulset: Some(owner),
        }),
        (_, Some(owner)) => Err(format!(
            "pod name {name:?} is not <statefulset>-<ordinal> for its owner StatefulSet {owner:?}"
        )),
        (Some((prefix, index)), None) => Ok(Ordinal {
            index,
            statefulset: Some(prefix),
        }),
        (None, None) => Err(format!(
            "pod name {name:?} does not end in -<ordinal> and the pod has no {POD_INDEX_LABEL} label"
        )),
    }
}

fn split_name(name: &str) -> Option<(&str, i64)> {
    let (prefix, suffix) = name.rsplit_once('-')?;
    if prefix.is_empty() {
        return None;
    }
    Some((prefix, parse_index(suffix)?))
}

fn parse_index(text: &str) -> Option<i64> {
    // The controller writes plain decimal; reject signs and leading zeros it would never write.
    if text.is_empty()
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return None;
    }
    text.parse::<u32>().ok().map(i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::test_pods::PodBuilder;

    #[test]
    fn name_suffix_gives_the_ordinal() {
        let pod = PodBuilder::broker("kafka-3").view();
        let ordinal = derive_ordinal(&pod).unwrap();
        assert_eq!(
            ordinal,
            Ordinal {
                index: 3,
                statefulset: Some("kafka")
            }
        );
    }

    #[test]
    fn hyphenated_statefulset_names_keep_their_prefix() {
        let pod = PodBuilder::broker("my-kafka-cluster-12")
            .owner("my-kafka-cluster")
            .view();
        let ordinal = derive_ordinal(&pod).unwrap();
        assert_eq!(
            ordinal,
            Ordinal {
                index: 12,
                statefulset: Some("my-kafka-cluster")
            }
        );
    }

    #[test]
    fn pod_index_label_wins_over_the_name() {
        let pod = PodBuilder::broker("kafka-3")
            .label(POD_INDEX_LABEL, "7")
            .view();
        assert_eq!(derive_ordinal(&pod).unwrap().index, 7);
    }

    #[test]
    fn malformed_pod_index_label_is_explained() {
        let pod = PodBuilder::broker("kafka-3")
            .label(POD_INDEX_LABEL, "x")
            .view();
        assert!(derive_ordinal(&pod).unwrap_err().contains(POD_INDEX_LABEL));
    }

    #[test]
    fn name_not_matching_the_owner_statefulset_has_no_ordinal() {
        let pod = PodBuilder::broker("zookeeper-0").owner("kafka").view();
        let why = derive_ordinal(&pod).unwrap_err();
        assert!(why.contains("\"kafka\""), "{why}");
    }

    #[test]
    fn generate_name_only_pod_has_no_ordinal() {
        let pod = PodBuilder::broker("").view();
        assert!(derive_ordinal(&pod).unwrap_err().contains("generateName"));
    }

    #[test]
    fn name_without_number_has_no_ordinal() {
        for name in ["kafka", "kafka-a", "kafka-01", "-1"] {
            let pod = PodBuilder::broker(name).view();
            assert!(derive_ordinal(&pod).is_err(), "{name}");
        }
    }
}
