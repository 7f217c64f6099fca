//! Every object a situation, question or answer names ("the <colour> <class>") is the only
//! object of that colour and class in scene.json; class-only references ("what colour is the
//! tv?") name a class that appears once; count answers match scene.json.

mod common;

use common::{read_json, small, write_run};

const CLASSES: [&str; 10] = ["chair", "table", "bed", "sofa", "cabinet", "lamp", "tv", "plant", "door", "window"];
const COLOURS: [&str; 10] = ["red", "green", "blue", "yellow", "white", "black", "brown", "orange", "purple", "gray"];
const NUMBERS: [&str; 11] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];

#[test]
fn referents_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    write_run(dir.path(), &small(5), 6);
    let mut checked = 0;
    for line in std::fs::read_to_string(dir.path().join("questions.jsonl")).unwrap().lines() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let scene = read_json(&dir.path().join(format!("scenes/{}/scene.json", rec["scene"].as_str().unwrap())));
        let objects = scene["objects"].as_array().unwrap();
        let count = |colour: Option<&str>, class: &str| objects.iter().filter(|o| o["class"] == class && colour.is_none_or(|c| o["colour"] == c)).count();
        let (situation, question, answer) = (rec["situation"].as_str().unwrap(), rec["question"].as_str().unwrap(), rec["answer"].as_str().unwrap());
        for text in [situation, question, &format!("the {answer}")] {
            for colour in COLOURS {
                for class in CLASSES {
                    if text.contains(&format!("the {colour} {class}")) {
                        assert_eq!(count(Some(colour), class), 1, "{text:?}: the {colour} {class} is not unique");
                        checked += 1;
                    }
                }
            }
        }
        if let Some(class) = question.strip_prefix("what colour is the ").and_then(|q| q.strip_suffix('?')) {
            assert_eq!(count(None, class), 1, "{question}");
            assert_eq!(count(Some(answer), class), 1, "{question} -> {answer}");
        }
        if let Some(plural) = question.strip_prefix("how many ").and_then(|q| q.strip_suffix("s are there?")) {
            assert_eq!(NUMBERS[count(None, plural)], answer, "{question}");
        }
        if question.starts_with("how far") {
            assert!(answer.parse::<f64>().is_ok() && answer.split('.').nth(1).map(str::len) == Some(1), "{answer}");
        }
        assert_eq!(answer, answer.to_lowercase());
        assert!(!answer.ends_with('.'));
    }
    assert!(checked > 50, "{checked}");
}
