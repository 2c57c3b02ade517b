<?php
// The two pieces of Drupal that examples/drupal uses, so that its PHP runs without
// Drupal installed. Signatures as in Drupal 10/11 core.
namespace Drupal\Core\Queue {
  interface QueueInterface {
    public function createItem($data);
    public function numberOfItems();
    public function claimItem($lease_time = 3600);
    public function deleteItem($item);
    public function releaseItem($item);
    public function createQueue();
    public function deleteQueue();
  }
}

namespace Drupal\Core\Site {
  final class Settings {
    public static array $values = [];
    public static function get($name, $default = NULL) {
      return self::$values[$name] ?? $default;
    }
  }
}
