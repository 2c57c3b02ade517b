<?php

namespace Drupal\gearctl_example\Queue;

use Drupal\Core\Site\Settings;

/**
 * The `queue.gearman` service: Drupal's QueueFactory asks it for a queue by name.
 * The servers come from $settings['gearman_servers'] (default 127.0.0.1:4730).
 */
class GearmanQueueFactory {

  public function get($name) {
    return new GearmanQueue($name, Settings::get('gearman_servers', '127.0.0.1:4730'));
  }

}
