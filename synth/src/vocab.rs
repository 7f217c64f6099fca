//! The closed vocabularies: object classes with their typical sizes and shapes, and colour names
//! with their RGB.

use serde::Serialize;

/// An object class. Floor objects stand on the floor; doors and windows are thin boxes on a wall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    Chair,
    Table,
    Bed,
    Sofa,
    Cabinet,
    Lamp,
    Tv,
    Plant,
    Door,
    Window,
}

/// How an object is modelled for ray casting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// A box rotated about z by the object's yaw.
    Box,
    /// A vertical cylinder (its size's x and y are the diameter).
    Cylinder,
}

/// Every class, in the order used for sampling.
pub const CLASSES: [Class; 10] =
    [Class::Chair, Class::Table, Class::Bed, Class::Sofa, Class::Cabinet, Class::Lamp, Class::Tv, Class::Plant, Class::Door, Class::Window];

/// Relative sampling weight, and how many of a class one room may hold.
pub fn class_weight_and_limit(class: Class) -> (u32, usize) {
    match class {
        Class::Chair => (5, 4),
        Class::Table => (3, 2),
        Class::Bed => (1, 1),
        Class::Sofa => (2, 2),
        Class::Cabinet => (3, 2),
        Class::Lamp => (2, 2),
        Class::Tv => (1, 1),
        Class::Plant => (3, 3),
        Class::Door => (2, 1),
        Class::Window => (2, 2),
    }
}

impl Class {
    pub fn name(self) -> &'static str {
        match self {
            Class::Chair => "chair",
            Class::Table => "table",
            Class::Bed => "bed",
            Class::Sofa => "sofa",
            Class::Cabinet => "cabinet",
            Class::Lamp => "lamp",
            Class::Tv => "tv",
            Class::Plant => "plant",
            Class::Door => "door",
            Class::Window => "window",
        }
    }

    pub fn plural(self) -> String {
        format!("{}s", self.name())
    }

    pub fn shape(self) -> Shape {
        match self {
            Class::Lamp | Class::Plant => Shape::Cylinder,
            _ => Shape::Box,
        }
    }

    pub fn on_wall(self) -> bool {
        matches!(self, Class::Door | Class::Window)
    }

    /// Ranges (metres) of the full extents along the object's local x (width, along the wall for
    /// wall objects), local y (depth) and z (height); cylinders use x for the diameter and y is
    /// set equal to it.
    pub fn size_ranges(self) -> [(f64, f64); 3] {
        match self {
            Class::Chair => [(0.42, 0.55), (0.42, 0.55), (0.80, 1.00)],
            Class::Table => [(0.80, 1.60), (0.60, 1.00), (0.70, 0.78)],
            Class::Bed => [(1.40, 1.80), (1.90, 2.10), (0.45, 0.60)],
            Class::Sofa => [(1.50, 2.10), (0.80, 0.95), (0.75, 0.90)],
            Class::Cabinet => [(0.60, 1.20), (0.40, 0.60), (0.90, 1.90)],
            Class::Lamp => [(0.30, 0.45), (0.0, 0.0), (1.40, 1.70)],
            Class::Tv => [(0.90, 1.30), (0.20, 0.35), (0.90, 1.20)],
            Class::Plant => [(0.40, 0.65), (0.0, 0.0), (0.60, 1.20)],
            Class::Door => [(0.80, 0.95), (0.08, 0.08), (2.00, 2.10)],
            Class::Window => [(0.80, 1.60), (0.08, 0.08), (0.80, 1.20)],
        }
    }

    /// Colour names this class is drawn in (doors are not purple).
    pub fn colours(self) -> &'static [usize] {
        match self {
            Class::Door => &[4, 6, 9, 0, 3],
            Class::Window => &[4, 5, 9, 6],
            _ => &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        }
    }
}

/// A colour name and its RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Colour {
    pub name: &'static str,
    pub rgb: [u8; 3],
}

/// The closed colour palette; indices are stable (classes refer to them).
pub const PALETTE: [Colour; 10] = [
    Colour { name: "red", rgb: [200, 40, 40] },
    Colour { name: "green", rgb: [50, 160, 60] },
    Colour { name: "blue", rgb: [40, 80, 200] },
    Colour { name: "yellow", rgb: [230, 200, 40] },
    Colour { name: "white", rgb: [235, 235, 230] },
    Colour { name: "black", rgb: [30, 30, 32] },
    Colour { name: "brown", rgb: [120, 75, 40] },
    Colour { name: "orange", rgb: [240, 130, 30] },
    Colour { name: "purple", rgb: [130, 50, 160] },
    Colour { name: "gray", rgb: [128, 128, 128] },
];

/// The English word for a small count ("one" .. "twenty"), else the digits.
pub fn number_word(n: usize) -> String {
    const WORDS: [&str; 21] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    WORDS.get(n).map(|w| w.to_string()).unwrap_or_else(|| n.to_string())
}
